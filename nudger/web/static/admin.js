// Upload progress: poll the job's state and reload the page when it is done.
// Without JavaScript the page refreshes itself (a <noscript> meta refresh).
(function () {
  var box = document.querySelector("[data-poll]");
  if (!box) return;
  var url = box.getAttribute("data-poll");
  var bar = document.getElementById("upload-progress");
  var phase = document.getElementById("upload-phase");
  function tick() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (s) {
        if (!s.running) { window.location.reload(); return; }
        var pct = Math.round(100 * s.progress);
        bar.value = s.progress;
        bar.textContent = pct + "%";
        phase.textContent = (s.phase || "Working") + " · " + pct + "%";
        setTimeout(tick, 1000);
      })
      .catch(function () { setTimeout(tick, 3000); });
  }
  setTimeout(tick, 1000);
})();
