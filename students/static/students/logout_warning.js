// The warning before the nightly logout (students/warning.py, students/logout_warning.html).
// - Counts down the seconds the server sent, never the browser's wall clock.
// - Every open tab agrees: tabs share their deadlines (BroadcastChannel, or localStorage's storage
//   events where there is none) and all keep the earliest, the one that lost least time in transit.
// - A tab that slept catches up: the countdown is recomputed from a monotonic clock at every tick and
//   when the tab shows again, and a tab whose timers stopped (the machine slept) asks the server anew.
// - At zero the page asks the server, which has ended the session by then, and goes to the login page
//   with the reason the server gives; the other tabs follow. A logout by hand stops every countdown,
//   so no tab later claims that the nightly logout signed the user out.
(function () {
  "use strict";
  var banner = document.getElementById("logout-warning");
  if (!banner) return;

  var KEY = "nightly-logout-warning";            // BroadcastChannel name and localStorage message key
  var BY_HAND_KEY = "nightly-logout-by-hand";    // when this browser last logged out by hand
  var STOPPED_AFTER_MS = 5000;                   // a tick this late means the timers were stopped
  var MIN_ASK_GAP_MS = 1000;

  // One timebase for all tabs of this browser: each tab's time origin plus its monotonic clock.
  // The wall clock only anchors tabs to each other; every duration comes from the server.
  function now() { return performance.timeOrigin + performance.now(); }

  var state = {
    at: Number(banner.dataset.at),
    time: banner.dataset.time,
    window: Number(banner.dataset.window) * 1000,
    token: banner.dataset.token,
    deadline: now() + Number(banner.dataset.secondsLeft) * 1000
  };
  var statusUrl = banner.dataset.statusUrl;
  var loadedAt = Date.now();
  var timer = null, lastTick = Date.now(), asking = false, lastAsk = 0, finished = false;

  // --- talking to the other tabs ---------------------------------------------------------------
  var channel = "BroadcastChannel" in window ? new BroadcastChannel(KEY) : null;

  function send(message) {
    if (channel) {
      channel.postMessage(message);
      return;
    }
    try {  // a fresh value each time, so the storage event fires even for a repeated message
      localStorage.setItem(KEY, JSON.stringify({message: message, nonce: Math.random()}));
    } catch (e) { /* storage off: this tab counts alone */ }
  }

  function receive(message) {
    if (!message || finished) return;
    if (message.type === "deadline" && message.at === state.at) {
      // Never one already past here: a tab opened after the machine slept may have another time
      // origin; this tab then keeps its own (and the server settles it at zero).
      if (message.deadline < state.deadline && message.deadline > now()) {
        state.deadline = message.deadline;
        tick();
      } else if (message.deadline > state.deadline) {
        send({type: "deadline", at: state.at, deadline: state.deadline});  // the newcomer adopts ours
      }
    } else if (message.type === "signed-out" && message.at === state.at) {
      leave(message.url);
    } else if (message.type === "by-hand") {
      stop();
    }
  }

  if (channel) channel.onmessage = function (event) { receive(event.data); };
  window.addEventListener("storage", function (event) {
    if (event.key === KEY && event.newValue) {
      try { receive(JSON.parse(event.newValue).message); } catch (e) { /* not ours */ }
    }
  });

  // --- the banner ------------------------------------------------------------------------------
  function inWords(ms) {
    var seconds = Math.ceil(ms / 1000);
    var minutes = Math.floor(seconds / 60);
    var rest = seconds % 60;
    if (minutes === 0) return "in " + rest + " s";
    return "in " + minutes + " min " + (rest < 10 ? "0" : "") + rest + " s";
  }

  function render(ms) {
    if (ms > state.window) {
      banner.hidden = true;
      return;
    }
    var left = banner.querySelector(".logout-warning-left");
    var time = banner.querySelector("time");
    if (!left || !time || time.textContent !== state.time) {  // opened before the window, or a new time
      banner.textContent = "You will be signed out at ";
      time = banner.appendChild(document.createElement("time"));
      time.textContent = state.time;
      banner.appendChild(document.createTextNode(" ("));
      left = banner.appendChild(document.createElement("span"));
      left.className = "logout-warning-left";
      banner.appendChild(document.createTextNode("). Save your work."));
    }
    left.textContent = inWords(ms);
    banner.dataset.deadline = String(state.deadline);  // what the tabs agreed on (tests read it)
    banner.hidden = false;
  }

  function tick() {
    clearTimeout(timer);
    if (finished) return;
    lastTick = Date.now();
    var ms = state.deadline - now();
    if (ms <= 0) {
      render(0);
      ask();
      return;
    }
    render(ms);
    // Wake just after the shown second changes; far from the window, at most once a minute.
    var wait = ms > state.window + 60000 ? 60000 : (ms % 1000) + 20;
    timer = setTimeout(tick, wait);
  }

  // --- the server --------------------------------------------------------------------------------
  function ask() {
    if (asking || finished) return;
    var gap = Date.now() - lastAsk;
    if (gap < MIN_ASK_GAP_MS) {
      clearTimeout(timer);  // a pending tick would clear this retry and count on to zero
      timer = setTimeout(ask, MIN_ASK_GAP_MS - gap);
      return;
    }
    asking = true;
    lastAsk = Date.now();
    var query = "?token=" + encodeURIComponent(state.token) +
                "&next=" + encodeURIComponent(location.pathname + location.search);
    fetch(statusUrl + query, {credentials: "same-origin", cache: "no-store", headers: {Accept: "application/json"}})
      .then(function (response) { return response.json(); })
      .then(function (answer) {
        asking = false;
        if (!answer.signed_in) {
          send({type: "signed-out", at: state.at, url: answer.login_url});
          leave(answer.login_url);
        } else if (!answer.warning) {
          stop();  // the schedule changed, or now keeps this user
        } else {
          var w = answer.warning;
          state = {at: w.at, time: w.time, window: w.window * 1000, token: w.token,
                   deadline: now() + w.seconds_left * 1000};
          send({type: "deadline", at: state.at, deadline: state.deadline});
          tick();
        }
      })
      .catch(function () {  // server unreachable: try again shortly, the countdown stays at zero
        asking = false;
        timer = setTimeout(ask, 5000);
      });
  }

  function leave(url) {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    location.assign(url);
  }

  function stop() {
    finished = true;
    clearTimeout(timer);
    banner.hidden = true;
  }

  function loggedOutByHandSinceLoad() {
    try { return Number(localStorage.getItem(BY_HAND_KEY) || 0) > loadedAt; } catch (e) { return false; }
  }

  function wake() {
    if (finished) return;
    if (loggedOutByHandSinceLoad()) {
      stop();
      return;
    }
    var stopped = Date.now() - lastTick > STOPPED_AFTER_MS + 60000;
    if (stopped || state.deadline - now() <= state.window) {
      ask();  // the server's seconds, in case the monotonic clock paused while the machine slept
    } else {
      tick();
    }
  }

  // A logout by hand, in any tab: the other tabs stop counting down.
  var form = document.getElementById("logout-form");
  if (form) {
    form.addEventListener("submit", function () {
      try { localStorage.setItem(BY_HAND_KEY, String(Date.now())); } catch (e) { /* storage off */ }
      send({type: "by-hand"});
      stop();
    });
  }

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") wake();
  });
  window.addEventListener("pageshow", function (event) { if (event.persisted) wake(); });
  document.addEventListener("resume", wake);  // a tab the browser froze in the background

  send({type: "deadline", at: state.at, deadline: state.deadline});
  tick();
})();
