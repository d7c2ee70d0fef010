import datetime
import gc
import os
import time

from django import forms
from django.contrib.auth.models import Group, User
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

START = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
ITEMS = [
    {"n": i, "name": f"item {i}", "price": i * 1.25, "when": START + datetime.timedelta(hours=i * 7)}
    for i in range(1, 501)
]


class ContactForm(forms.Form):
    name = forms.CharField(label=gettext_lazy("Name"), max_length=100)
    email = forms.EmailField(label=gettext_lazy("Email"))
    message = forms.CharField(label=gettext_lazy("Message"), widget=forms.Textarea)
    when = forms.DateField(label=gettext_lazy("Date"), required=False)
    choice = forms.ChoiceField(choices=[("a", "A"), ("b", "B"), ("c", "C")])


def home(request):
    now = datetime.datetime.now(datetime.UTC)
    return render(request, "djangoapp/home.html", {"now": now, "count": len(ITEMS)})


def about(request):
    n = len(request.GET.get("q", "abc"))
    msg = ngettext("%(n)d item", "%(n)d items", n) % {"n": n}
    return render(request, "djangoapp/about.html", {"msg": msg})


def items(request):
    page = Paginator(ITEMS, 25).get_page(request.GET.get("page"))
    return render(request, "djangoapp/items.html", {"page": page})


def item(request, n):
    if not 1 <= n <= len(ITEMS):
        raise Http404(_("No such item"))
    return render(request, "djangoapp/item.html", {"item": ITEMS[n - 1]})


def contact(request):
    form = ContactForm(initial={"name": request.GET.get("name", "")})
    return render(request, "djangoapp/contact.html", {"form": form})


def db(request):
    """The one view that reads the sqlite file (through the ORM)."""
    users = User.objects.filter(is_active=True).count()
    groups = list(Group.objects.order_by("name").values_list("name", flat=True)[:10])
    return render(request, "djangoapp/db.html", {"users": users, "groups": groups})


def block(request):
    time.sleep(int(request.GET.get("ms", "10")) / 1000.0)
    return HttpResponse(b"blocked\n", content_type="text/plain")


def pid(request):
    return HttpResponse(f"{os.getpid()}\n", content_type="text/plain")


def gc_view(request):
    return HttpResponse(f"{os.getpid()} {gc.collect()}\n", content_type="text/plain")
