// Call forms pushed on a call ("sheets"): /sheets/events tells this page, which shows
// the form, pre-filled, in a pop-up; saving it posts it like the form's own page.
(function () {
  "use strict";
  const dialog = document.getElementById("sheet-dialog");
  if (!dialog || !window.EventSource) return;
  const source = new EventSource("/sheets/events");
  source.addEventListener("ready", () => { document.body.dataset.sheets = "live"; });
  source.addEventListener("error", () => { document.body.dataset.sheets = "down"; });
  source.addEventListener("sheet", async (message) => {
    const sheet = JSON.parse(message.data);
    const response = await fetch("/sheets/" + encodeURIComponent(sheet.id));
    if (!response.ok) return;
    dialog.innerHTML = await response.text();  // our own page, escaped by its template
    dialog.querySelectorAll("[data-close]").forEach((button) => {
      button.addEventListener("click", () => dialog.close());
    });
    if (!dialog.open) dialog.showModal();
    const first = dialog.querySelector("input, select, textarea");
    if (first) first.focus();
  });
  window.addEventListener("pagehide", () => source.close());
})();
