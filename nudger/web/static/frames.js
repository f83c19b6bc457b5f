// Size each email preview frame to its content, so nothing (the footer of a
// long email, the middle of a digest) hides behind a scrollbar inside the frame.
// The frame is sandboxed without scripts but same-origin, so this page can
// measure it; without JavaScript the frame keeps the height the CSS gives it.
(function () {
  var frames = document.querySelectorAll("iframe[data-fit]");
  function fit(frame) {
    var doc;
    try { doc = frame.contentDocument; } catch (e) { return; }
    if (!doc || !doc.documentElement) return;
    // Shrink first so that scrollHeight measures the content, not the old frame.
    frame.style.height = "0px";
    var border = frame.offsetHeight - frame.clientHeight;
    frame.style.height = (doc.documentElement.scrollHeight + border) + "px";
  }
  Array.prototype.forEach.call(frames, function (frame) {
    frame.addEventListener("load", function () { fit(frame); });
    if (frame.contentDocument && frame.contentDocument.readyState === "complete" &&
        frame.contentDocument.URL !== "about:blank") {
      fit(frame);
    }
  });
  var pending;
  window.addEventListener("resize", function () {
    clearTimeout(pending);
    pending = setTimeout(function () { Array.prototype.forEach.call(frames, fit); }, 100);
  });
})();
