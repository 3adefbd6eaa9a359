from distill_cli.cli import main

main()
