from django.contrib.auth.decorators import login_required
from django.shortcuts import render


@login_required
def statistics(request):
    """The page a signed-in student sees; anonymous visitors are sent to the login page."""
    return render(request, "students/statistics.html")
