/* The dashboard's only script (pages work without it): times in the viewer's time zone,
   and the overview's live part fetched again every few seconds, without a full reload. */
(function () {
  "use strict";

  var format = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short"
  });

  /* <time datetime="...Z">: the server wrote UTC; show local time, keep UTC in the title. */
  function localTimes(root) {
    var nodes = root.querySelectorAll("time[datetime]");
    for (var i = 0; i < nodes.length; i++) {
      var node = nodes[i];
      if (node.getAttribute("data-local")) continue;
      var moment = new Date(node.getAttribute("datetime"));
      if (isNaN(moment.getTime())) continue;
      node.title = node.textContent.trim();
      node.textContent = format.format(moment);
      node.setAttribute("data-local", "1");
    }
  }

  function live() {
    var box = document.querySelector("[data-live]");
    if (!box || !window.fetch) return;
    var url = box.getAttribute("data-live");
    var busy = false;
    window.setInterval(function () {
      if (busy || document.hidden) return;
      busy = true;
      fetch(url, { credentials: "same-origin", redirect: "manual" })
        .then(function (answer) {
          /* Signed out meanwhile: a redirect to /login; the next full load shows it. */
          if (!answer.ok || answer.headers.get("X-Dashboard-Fragment") !== "overview") return null;
          return answer.text();
        })
        .then(function (html) {
          if (html === null) return;
          box.innerHTML = html;
          localTimes(box);
          var stamp = document.querySelector(".stamp time");
          if (stamp) {
            stamp.setAttribute("datetime", new Date().toISOString());
            stamp.removeAttribute("data-local");
            stamp.textContent = new Date().toISOString();
            localTimes(stamp.parentNode);
          }
        })
        .catch(function () { /* offline for a moment: try again next time */ })
        .then(function () { busy = false; });
    }, 10000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    live();
  });
})();
