from fvr_audit.cli.app import main

main()
