from volseg.cli import main

main()
