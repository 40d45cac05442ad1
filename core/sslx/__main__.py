"""``python -m sslx`` (and ``torchrun -m sslx``) runs the command line."""

from sslx.cli import main

main()
