"""{% nightly_logout_health as health %}: the logout's health for the admin index's warning."""
from django import template

from students.health import logout_health

register = template.Library()


@register.simple_tag
def nightly_logout_health():
    return logout_health()
