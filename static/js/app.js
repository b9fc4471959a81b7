// Progressive touches only: every page works without this file.
(function () {
  "use strict";
  // Keyboard: j/k move the selection in the case list, Enter opens it, "/" focuses search.
  function rows() { return Array.from(document.querySelectorAll("tr.case-row")); }
  function selected() { return document.querySelector("tr.case-row.selected"); }
  function select(row) {
    const current = selected();
    if (current) current.classList.remove("selected");
    if (row) { row.classList.add("selected"); row.scrollIntoView({ block: "nearest" }); }
  }
  document.addEventListener("keydown", function (event) {
    const target = event.target;
    if (target instanceof HTMLElement && target.closest("input, textarea, select, [contenteditable]")) return;
    if (event.metaKey || event.ctrlKey || event.altKey) return;
    const all = rows();
    const index = all.indexOf(selected());
    if (event.key === "j" && all.length) { select(all[Math.min(index + 1, all.length - 1)]); event.preventDefault(); }
    else if (event.key === "k" && all.length) { select(all[Math.max(index - 1, 0)]); event.preventDefault(); }
    else if (event.key === "Enter" && selected()) {
      const link = selected().querySelector("a"); if (link) { link.click(); event.preventDefault(); }
    } else if (event.key === "/") {
      const search = document.querySelector("[data-search]");
      if (search) { search.focus(); event.preventDefault(); }
    }
  });
})();
