from hpt.cli import console_main

console_main()
