from django.contrib.auth import logout

from students.cutoff import latest_cutoff


class LogoutCutoffMiddleware:
    """Log out any authenticated session that began before the latest logout run.

    Goes after AuthenticationMiddleware. Cost: nothing for anonymous requests; for an
    authenticated request one cache read (see students.cutoff.latest_cutoff) and a dict lookup
    in the already-loaded session.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            cutoff = latest_cutoff()
            if cutoff is not None and cutoff.ends(request.session, user):
                logout(request)
        return self.get_response(request)
