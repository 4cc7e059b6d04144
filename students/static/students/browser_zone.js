// The login form sends the browser's time zone, so a user who has none yet gets theirs
// (students.zones.fill_from_browser checks it against the IANA list).
(function () {
  "use strict";
  var field = document.getElementById("id_browser_zone");
  try {
    if (field) field.value = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch (error) {
    // No Intl: the user keeps the site's zone until they choose one.
  }
})();
