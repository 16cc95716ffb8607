// The console's one script: copy buttons, and the live provisioning log.
// Copy buttons: <button data-copy="ELEMENT_ID"> copies that element's text.
"use strict";

function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    return navigator.clipboard.writeText(text);
  }
  // Plain-HTTP pages have no async clipboard: fall back to a selection and the legacy copy command.
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "offscreen";
  document.body.appendChild(area);
  area.select();
  const ok = document.execCommand("copy");
  area.remove();
  return ok ? Promise.resolve() : Promise.reject(new Error("copy refused"));
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) {
    return;
  }
  const source = document.getElementById(button.dataset.copy);
  copyText(source.textContent.trim()).then(
    () => { button.textContent = "Copied"; button.classList.add("copied"); },
    () => { button.textContent = "Press Ctrl+C"; window.getSelection().selectAllChildren(source); },
  );
  setTimeout(() => { button.textContent = "Copy"; button.classList.remove("copied"); }, 2000);
});

// The live provisioning log: <table id="logs" data-live="URL" data-after="ID"> takes the rows written
// after ID from the server-sent events at URL, newest on top; Pause closes the stream, Resume opens it
// again from the last row shown, so no record is lost in between.
const liveTable = document.getElementById("logs");
if (liveTable && liveTable.dataset.live) {
  const toggle = document.getElementById("live-toggle");
  const status = document.getElementById("live-status");
  const body = liveTable.tBodies[0];
  let last = liveTable.dataset.after || "0";
  let source = null;
  const start = () => {
    const join = liveTable.dataset.live.includes("?") ? "&" : "?";
    source = new EventSource(`${liveTable.dataset.live}${join}after=${encodeURIComponent(last)}`);
    source.addEventListener("record", (event) => {
      const record = JSON.parse(event.data);
      last = String(record.id);
      const empty = body.querySelector("td[colspan]");
      if (empty) {
        empty.parentElement.remove();
      }
      body.insertAdjacentHTML("afterbegin", record.html);
      while (body.rows.length > 200) {
        body.deleteRow(-1);
      }
    });
    source.addEventListener("open", () => { status.textContent = "Live: new records appear at the top as they are written."; });
    source.addEventListener("error", () => { status.textContent = "Live: reconnecting…"; });
    toggle.textContent = "Pause";
  };
  const stop = () => {
    source.close();
    source = null;
    toggle.textContent = "Resume";
    status.textContent = "Paused: records written meanwhile appear when you resume.";
  };
  toggle.addEventListener("click", () => (source ? stop() : start()));
  start();
}

// The Overview's counters: <div id="overview-live" data-counters="URL"> listens to the console's
// server-sent counters (every IdP's last 24 hours, sent when they change) and writes them into the
// elements marked data-counter="IDP:FIELD". The browser reconnects by itself when a stream ends.
const overview = document.getElementById("overview-live");
if (overview && overview.dataset.counters) {
  const counters = new EventSource(overview.dataset.counters);
  counters.addEventListener("counters", (message) => {
    for (const c of JSON.parse(message.data)) {
      for (const field of ["operations", "failures", "last_activity"]) {
        const cell = document.querySelector(`[data-counter="${c.idp_id}:${field}"]`);
        if (!cell) {
          continue;
        }
        const value = c[field];
        cell.textContent = field === "last_activity" ? (value ? value.slice(0, 19).replace("T", " ") : "—") : String(value);
        if (field === "failures") {
          cell.classList.toggle("bad-text", value > 0);
        }
      }
    }
  });
}
