// nestguard: a little plain JavaScript. Every page works without it.
"use strict";
document.addEventListener("submit", function (ev) {
  var form = ev.target;
  var question = form.getAttribute && form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) { ev.preventDefault(); }
});
// The block page: while a request waits, check for the parent's answer every 10 s.
(function () {
  var main = document.getElementById("main");
  if (!main || !main.dataset.statusUrl || main.dataset.status !== "pending") { return; }
  var tries = 0;
  var timer = window.setInterval(function () {
    tries += 1;
    if (tries > 180) { window.clearInterval(timer); return; }
    fetch(main.dataset.statusUrl, { credentials: "omit", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (data && data.status && data.status !== "pending") { window.location.reload(); }
      })
      .catch(function () {});
  }, 10000);
})();
