from wmbench.cli import main

main()
