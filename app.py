"""AniMatrix Studio in the browser: `python app.py [--host H] [--port P] [--share] [--auth U:P] [--data-dir D]`."""
from app.main import main

if __name__ == "__main__":
    raise SystemExit(main())
