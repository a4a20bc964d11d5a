"""facegrid web: server-rendered pages and a small API over the stored collection.

app.py         routes, pages and the API (Starlette, run by uvicorn in commands/web.py)
library.py     what the pages read: the databases read-only, searches and their results
gridstatus.py  the Status page's figures (status.py and buried.py)
security.py    who may ask what: loopback or a token, CSRF, headers
templates/, static/  the pages, their CSS and JavaScript (package data; nothing is fetched elsewhere)
"""
