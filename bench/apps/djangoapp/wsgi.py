"""`djangoapp.wsgi:application`: what every server of the memory bench imports."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djangoapp.settings")
application = get_wsgi_application()
