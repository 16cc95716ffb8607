// Copy buttons: <button data-copy="ELEMENT_ID"> copies that element's text. The only script in the console.
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
