from lstmshape._entry import main

main()
