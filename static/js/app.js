// Progressive touches only: every page works without this file.
(function () {
  "use strict";
  const tracerail = (window.tracerail = window.tracerail || {});

  // A live refresh must never wipe what someone is typing: the case page only polls
  // while no field of its forms differs from what the server rendered.
  tracerail.dirty = function () {
    const fields = document.querySelectorAll("#case textarea, #case input[type=text], #case input[type=datetime-local], #case select");
    for (const field of fields) {
      if (field instanceof HTMLSelectElement) {
        for (const option of field.options) if (option.selected !== option.defaultSelected) return true;
      } else if (field.value !== field.defaultValue) return true;
    }
    return document.activeElement instanceof HTMLElement && !!document.activeElement.closest("#case form");
  };

  // The list does not refresh under someone's selection.
  tracerail.selecting = function () {
    return !!document.querySelector("input[name=case][form=bulk]:checked");
  };
  function updateSelectedCount() {
    const count = document.querySelectorAll("input[name=case][form=bulk]:checked").length;
    const label = document.querySelector(".bulk-bar .selected-count");
    if (label) label.textContent = count ? count + " selected:" : "With selected:";
  }
  // Checkboxes: "select all on this page", and shift-click selects a range.
  let lastChecked = null;
  document.addEventListener("click", function (event) {
    const box = event.target;
    if (!(box instanceof HTMLInputElement) || box.type !== "checkbox") return;
    if (box.id === "select-page") {
      document.querySelectorAll("input[name=case][form=bulk]").forEach(function (b) { b.checked = box.checked; });
    } else if (box.name === "case") {
      const boxes = Array.from(document.querySelectorAll("input[name=case][form=bulk]"));
      if (event.shiftKey && lastChecked && boxes.includes(lastChecked)) {
        const [a, b] = [boxes.indexOf(lastChecked), boxes.indexOf(box)].sort(function (x, y) { return x - y; });
        boxes.slice(a, b + 1).forEach(function (b2) { b2.checked = box.checked; });
      }
      lastChecked = box;
    } else return;
    updateSelectedCount();
  });

  // Polling stops while the tab is hidden (hx-trigger filters on visibilityState);
  // coming back refreshes at once.
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") document.dispatchEvent(new Event("visible-again"));
  });

  // Shareable filter URLs: leave out the filters that are empty.
  document.addEventListener("htmx:configRequest", function (event) {
    if (event.detail.verb !== "get" || !(event.detail.elt instanceof HTMLElement) || event.detail.elt.id !== "filters") return;
    const params = event.detail.parameters;
    for (const key of Object.keys(params)) {
      const value = params[key];
      if (value === "" || (Array.isArray(value) && value.length === 0)) delete params[key];
    }
  });

  // HTMX changes the filter without reloading: save what the address bar shows now.
  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (form instanceof HTMLFormElement && form.id === "save-view") {
      const query = document.getElementById("save-view-query");
      if (query) query.value = window.location.search.replace(/^\?/, "");
    }
    if (form instanceof HTMLFormElement && form.id === "bulk") {
      const back = form.querySelector("input[name=back]");
      if (back) back.value = window.location.search.replace(/^\?/, "");
    }
  });

  // Keyboard: j/k move the selection in the case list, Enter opens it, "/" focuses search.
  let selectedId = null;
  function rows() { return Array.from(document.querySelectorAll("tr.case-row")); }
  function selected() { return selectedId ? document.getElementById(selectedId) : null; }
  function select(row) {
    const current = selected();
    if (current) current.classList.remove("selected");
    selectedId = row ? row.id : null;
    if (row) { row.classList.add("selected"); row.scrollIntoView({ block: "nearest" }); }
  }
  // Keep the selection across live refreshes of the results; keep the export link's filter
  // in step with the address bar.
  document.addEventListener("htmx:afterSettle", function () {
    const row = selected();
    if (row) row.classList.add("selected");
    const exportLink = document.getElementById("export-link");
    if (exportLink) exportLink.search = window.location.search;
    updateSelectedCount();
  });
  document.addEventListener("keydown", function (event) {
    const target = event.target;
    if (target instanceof HTMLElement && target.closest("input, textarea, select, [contenteditable]")) {
      if (event.key === "Escape") target.blur();
      return;
    }
    if (event.metaKey || event.ctrlKey || event.altKey) return;
    const all = rows();
    const index = all.indexOf(selected());
    if (event.key === "j" && all.length) { select(all[Math.min(index + 1, all.length - 1)]); event.preventDefault(); }
    else if (event.key === "k" && all.length) { select(all[Math.max(index - 1, 0)]); event.preventDefault(); }
    else if (event.key === "x" && selected()) {
      const box = selected().querySelector("input[name=case]");
      if (box) { box.checked = !box.checked; updateSelectedCount(); event.preventDefault(); }
    }
    else if (event.key === "Enter" && selected()) {
      const link = selected().querySelector("td.mono a"); if (link) { link.click(); event.preventDefault(); }
    } else if (event.key === "c" && document.querySelector("#case .action-claim button")) {
      // Case page: c claims, m writes a comment, g goes back to the list.
      document.querySelector("#case .action-claim button").click(); event.preventDefault();
    } else if (event.key === "m" && document.getElementById("id_comment-body")) {
      document.getElementById("id_comment-body").focus(); event.preventDefault();
    } else if (event.key === "g" && document.getElementById("case") && !tracerail.dirty()) {
      window.location.href = "/cases/"; event.preventDefault();
    } else if (event.key === "h" && document.querySelector("nav.tabs") && !tracerail.dirty()) {
      // h switches between the case and its history.
      const other = document.querySelector("nav.tabs a:not([aria-current])");
      if (other) { other.click(); event.preventDefault(); }
    } else if (event.key === "/") {
      const search = document.querySelector("[data-search]");
      if (search) { search.focus(); event.preventDefault(); }
    }
  });
})();
