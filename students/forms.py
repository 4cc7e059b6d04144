"""The app's forms."""
from django import forms
from django.contrib.auth.forms import AuthenticationForm

from students.remember import offered
from students.schedule import iana_names


class LoginForm(AuthenticationForm):
    """The login page (students.views.LoginView): Django's form, with "Keep me signed in" while the
    schedule offers it (students.remember.offered)."""

    remember = forms.BooleanField(required=False, label="Keep me signed in")
    # Filled by students/static/students/browser_zone.js: a user with no zone yet gets this one.
    browser_zone = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not offered():
            del self.fields["remember"]


class TimeZoneForm(forms.Form):
    """The time-zone page (students.views.time_zone_page): one of the IANA zones, or "" for the site's."""

    zone = forms.ChoiceField(label="Time zone", required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["zone"].choices = [("", "The site's time zone")] + [(name, name) for name in sorted(iana_names())]
