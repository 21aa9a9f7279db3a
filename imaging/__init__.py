"""Fetching and re-encoding images: pure Python, Pillow and urllib3. Never imports Django."""
