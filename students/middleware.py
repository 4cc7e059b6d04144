from django.contrib.auth import logout
from django.utils import timezone

from students import cleanup
from students.clock import cutoffs_in_force


class LogoutCutoffMiddleware:
    """Log out any authenticated session that began before a cutoff in force: the latest logout
    run's, or the recorded schedule's clock cutoff (students.clock), each with its own keep rules.

    Goes after AuthenticationMiddleware. Cost: nothing for anonymous requests; for an
    authenticated request one cache round trip (see students.clock.cutoffs_in_force), a
    comparison or two and a dict lookup in the already-loaded session (students.cleanup adds a
    comparison with the process clock).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            if any(c.ends(request.session, user) for c in cutoffs_in_force(timezone.now(), request.session)):
                logout(request)
            cleanup.note_signed_in_request()  # with no scheduler: a storage cleanup after the response
        return self.get_response(request)
