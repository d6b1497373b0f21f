from edge_pcam.cli import main

main()
