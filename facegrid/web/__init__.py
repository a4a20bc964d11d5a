"""facegrid web: server-rendered pages and a small API over the stored collection.

app.py         Config and create_app: the app and its state (Starlette, run by uvicorn in commands/web.py)
handlers.py    the route handlers, pages and API, and the table of routes
pages.py       the templates' environment, filters and globals, and the render helper
uploads.py     uploaded targets and form values checked; pictures and downloads with their headers
library.py     what the pages read: the databases read-only, searches and their results
gridstatus.py  the Status page's figures (status.py and buried.py)
security.py    who may ask what: loopback or a token, CSRF, headers
templates/, static/  the pages, their CSS and JavaScript (package data; nothing is fetched elsewhere)
"""
