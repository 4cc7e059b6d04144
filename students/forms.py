"""The app's forms (the login form with "Keep me signed in" lives with its view in students.remember)."""
from django import forms

from students.schedule import iana_names


class TimeZoneForm(forms.Form):
    """The time-zone page (students.views.time_zone_page): one of the IANA zones, or "" for the site's."""

    zone = forms.ChoiceField(label="Time zone", required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["zone"].choices = [("", "The site's time zone")] + [(name, name) for name in sorted(iana_names())]
