// The live bus page: server-sent events from /bus/events, newest first.
(function () {
  "use strict";
  const list = document.getElementById("events");
  const empty = document.getElementById("empty");
  const status = document.getElementById("status");
  const statusText = document.getElementById("status-text");
  const template = document.getElementById("event-template");
  const form = document.getElementById("filter");
  const input = document.getElementById("names");
  let source = null;

  function setStatus(state, text) {
    status.className = "status " + state;
    statusText.textContent = text;
  }

  function show(item, fresh) {
    const node = template.content.firstElementChild.cloneNode(true);
    node.dataset.name = item.name;
    node.querySelector(".name").textContent = item.name;
    if (item.data && Number.isInteger(item.data.user_id)) {
      node.querySelector(".who-sent").textContent = "from user " + item.data.user_id;
    }
    const time = node.querySelector("time");
    time.dateTime = item.received;
    time.textContent = new Date(item.received).toLocaleTimeString();
    node.querySelector("pre").textContent = JSON.stringify({name: item.name, data: item.data}, null, 2);
    if (fresh) node.classList.add("fresh");
    list.prepend(node);
    while (list.children.length > 200) list.lastElementChild.remove();
    empty.hidden = true;
  }

  function connect() {
    if (source) source.close();
    list.replaceChildren();
    empty.hidden = false;
    const params = new URLSearchParams();
    input.value.split(",").map((n) => n.trim()).filter(Boolean).forEach((n) => params.append("name", n));
    source = new EventSource("/bus/events" + (params.size ? "?" + params : ""));
    let replaying = true;
    setTimeout(() => { replaying = false; }, 500);
    source.addEventListener("open", () => setStatus("live", "Live"));
    source.addEventListener("error", () => setStatus("down", "Reconnecting…"));
    source.addEventListener("bus", (message) => show(JSON.parse(message.data), !replaying));
    const url = new URL(window.location);
    if (input.value.trim()) url.searchParams.set("name", input.value.trim());
    else url.searchParams.delete("name");
    history.replaceState(null, "", url);
  }

  form.addEventListener("submit", (event) => { event.preventDefault(); connect(); });
  connect();
})();
