from lstmshape.cli import main

main()
