from clerksync.cli import main

main()
