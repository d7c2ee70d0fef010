"""FastAPI test app of bench/memory.py: `fastapi_mem:app`.

A few routes of the kinds an API serves: pydantic models in and out (JSON),
Jinja2 pages (the templates are in this file), path and query validation
(404 and 422 answers), per-language texts from Accept-Language. No database.
Every response carries X-Worker-Pid; /block, /pid and /gc are diagnostics.
"""

import datetime as dt
import gc
import os
import time
from enum import StrEnum

import jinja2
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field

START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
KEYS = ("title", "items", "price", "next", "missing")
TEXT = {
    lang: dict(zip(KEYS, words, strict=True))
    for lang, words in {
        "en": ("Catalogue", "Items", "Price", "Next", "Not found"),
        "fr": ("Catalogue", "Articles", "Prix", "Suivant", "Introuvable"),
        "de": ("Katalog", "Artikel", "Preis", "Weiter", "Nicht gefunden"),
        "es": ("Catálogo", "Artículos", "Precio", "Siguiente", "No existe"),
        "ja": ("カタログ", "商品", "価格", "次へ", "見つかりません"),
    }.items()
}
PAGES = {
    "base.html": """<!doctype html><html lang="{{ lang }}"><head>
<title>{% block title %}{{ t.title }}{% endblock %}</title></head><body><nav>
{% for code in langs %}<a href="?lang={{ code }}">{{ code|upper }}</a> {% endfor %}</nav>
<main>{% block content %}{% endblock %}</main>
<footer>{{ now.strftime("%Y-%m-%d %H:%M") }}</footer></body></html>""",
    "index.html": """{% extends "base.html" %}{% block content %}<h1>{{ t.title }}</h1>
<p>{{ count }} {{ t["items"]|lower }}</p>
<ul>{% for c in categories %}<li>{{ c.value|title }}</li>{% endfor %}</ul>{% endblock %}""",
    "items.html": """{% extends "base.html" %}{% block title %}{{ t["items"] }}{% endblock %}
{% block content %}<table>{% for it in items %}<tr class="{{ loop.cycle('odd', 'even') }}">
<td>{{ it.name|title }}</td><td>{{ t.price }} {{ "%.2f"|format(it.price) }}</td>
<td>{{ it.tags|join(", ") }}</td></tr>{% endfor %}</table>
{% if more %}<a href="?page={{ page + 1 }}">{{ t.next }}</a>{% endif %}{% endblock %}""",
}


class Category(StrEnum):
    books = "books"
    tools = "tools"
    games = "games"
    food = "food"


class Item(BaseModel):
    id: int
    name: str = Field(min_length=1, max_length=80)
    price: float = Field(ge=0)
    category: Category
    tags: list[str] = []
    added: dt.datetime


class ItemPage(BaseModel):
    page: int
    size: int
    total: int
    items: list[Item]


class Quote(BaseModel):
    item_id: int
    quantity: int = Field(ge=1, le=1000)
    total: float
    currency: str


CATS = list(Category)
ITEMS = [
    Item(
        id=i,
        name=f"item {i}",
        price=round(i * 1.25, 2),
        category=CATS[i % len(CATS)],
        tags=[f"t{i % 7}", f"t{i % 11}"],
        added=START + dt.timedelta(hours=7 * i),
    )
    for i in range(1, 501)
]
templates = Jinja2Templates(env=jinja2.Environment(loader=jinja2.DictLoader(PAGES), autoescape=True))
app = FastAPI(title="memory bench")


@app.middleware("http")
async def worker_pid(request: Request, call_next):
    response = await call_next(request)
    response.headers["X-Worker-Pid"] = str(os.getpid())
    return response


def lang_of(request: Request, lang: str | None) -> str:
    if lang in TEXT:
        return lang
    for part in request.headers.get("accept-language", "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in TEXT:
            return code
    return "en"


def page_context(request: Request, lang: str | None, **extra):
    code = lang_of(request, lang)
    return {"lang": code, "t": TEXT[code], "langs": list(TEXT), "now": dt.datetime.now(dt.UTC), **extra}


@app.get("/", response_class=HTMLResponse)
async def index(request: Request, lang: str | None = None):
    ctx = page_context(request, lang, count=len(ITEMS), categories=CATS)
    return templates.TemplateResponse(request, "index.html", ctx)


@app.get("/items", response_class=HTMLResponse)
async def items_page(request: Request, page: int = Query(1, ge=1, le=100), lang: str | None = None):
    chunk = ITEMS[(page - 1) * 20 : page * 20]
    ctx = page_context(request, lang, items=chunk, page=page, more=page * 20 < len(ITEMS))
    return templates.TemplateResponse(request, "items.html", ctx)


@app.get("/api/items", response_model=ItemPage)
async def list_items(
    page: int = Query(1, ge=1), size: int = Query(20, ge=1, le=100), category: Category | None = None
):
    chosen = [it for it in ITEMS if category is None or it.category == category]
    return ItemPage(page=page, size=size, total=len(chosen), items=chosen[(page - 1) * size : page * size])


@app.get("/api/items/{item_id}", response_model=Item)
async def get_item(item_id: int):
    if not 1 <= item_id <= len(ITEMS):
        raise HTTPException(status_code=404, detail="no such item")
    return ITEMS[item_id - 1]


@app.get("/api/quote", response_model=Quote)
async def quote(item_id: int, quantity: int = Query(1, ge=1, le=1000), currency: str = "EUR"):
    if not 1 <= item_id <= len(ITEMS):
        raise HTTPException(status_code=404, detail="no such item")
    total = round(ITEMS[item_id - 1].price * quantity, 2)
    return Quote(item_id=item_id, quantity=quantity, total=total, currency=currency.upper()[:3])


@app.get("/block", response_class=PlainTextResponse)
async def block(ms: int = 10):
    time.sleep(ms / 1000.0)  # blocks the loop on purpose: the readiness probe reaches every worker
    return "blocked\n"


@app.get("/pid", response_class=PlainTextResponse)
async def pid():
    return f"{os.getpid()}\n"


@app.get("/gc", response_class=PlainTextResponse)
async def full_gc():
    return f"{os.getpid()} {gc.collect()}\n"
