from toilbox.cli import main

main()
