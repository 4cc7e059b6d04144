from django.contrib.auth import logout
from django.utils import timezone

from students import cleanup, clock, remember, session_index


class LogoutCutoffMiddleware:
    """Log out any authenticated session that began before a cutoff in force: the latest logout
    run's, or the recorded schedule's clock cutoff (students.clock), each with its own keep rules.

    Goes after AuthenticationMiddleware. Cost: nothing for anonymous requests; for an
    authenticated request one cache round trip (see students.clock.read_state), a
    comparison or two and a dict lookup in the already-loaded session (students.cleanup adds a
    comparison with the process clock). In per-user time zone mode it also shows the page in the
    session's own zone (Django's current time zone), at no further cost. It leaves the schedule it
    read on the request (students.clock.schedule_for) for the warning banner.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        session = getattr(request, "session", None)
        key_before = session.session_key if session is not None else None  # the cookie's: nothing loaded
        response = self._respond(request)
        if key_before and session is not None and session.session_key != key_before:
            remember.follow_new_key(request, key_before)
            session_index.follow_new_key(request, key_before)
        return response

    def _respond(self, request):
        user = getattr(request, "user", None)
        zone = None
        if user is not None and user.is_authenticated:
            state = clock.read_state()
            setattr(request, clock.REQUEST_ATTRIBUTE, state.schedule)
            if any(c.ends(request.session, user) for c in state.cutoffs(timezone.now(), request.session)):
                logout(request)
            else:
                # per-user mode: the page speaks the user's time
                zone = clock.display_zone(state.schedule, request.session)
            cleanup.note_signed_in_request()  # with no scheduler: a storage cleanup after the response
        if zone is None:
            return self.get_response(request)
        timezone.activate(zone)
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
