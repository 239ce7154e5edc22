// Records load errors and whether every image decoded as attributes of the body element, so a
// headless browser's --dump-dom can check the page without a driver; it changes nothing a person sees.
(function () {
  var errors = [];
  window.addEventListener("error", function (e) {
    errors.push(String(e.message || (e.target && (e.target.src || e.target.tagName)) || "error"));
  }, true);
  document.addEventListener("securitypolicyviolation", function (e) {
    errors.push("blocked " + e.blockedURI);
  });
  window.addEventListener("load", function () {
    var images = document.images, ok = 0;
    for (var i = 0; i < images.length; i++) {
      if (images[i].complete && images[i].naturalWidth > 0) ok++;
    }
    var d = document.body.dataset;
    d.imagesTotal = images.length;
    d.imagesOk = ok;
    d.errors = errors.length;
    d.errorList = errors.join(" | ");
    d.pageHeight = document.documentElement.scrollHeight;
  });
})();
