"""``python -m imgcli``: the same entry point as the ``imgcli`` console script."""

from imgcli.cli import main

if __name__ == "__main__":
    main()
