// Sorting and filtering of the case table, and opening a closed case section when a link
// points into it. Plain DOM; reads text and data attributes, never writes HTML.
"use strict";
(function () {
  const table = document.getElementById("case-table");
  const body = table.tBodies[0];
  const filters = Array.from(document.querySelectorAll("[data-filter]"));

  function sortKey(row, column, numeric) {
    const cell = row.cells[column];
    const text = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent.trim();
    if (!numeric) return text;
    const x = parseFloat(text);        // "inf" parses to NaN: put it above every number
    return Number.isNaN(x) ? (/inf/i.test(text) ? Infinity : -Infinity) : x;
  }

  function compare(a, b) {
    if (typeof a === "number") return a === b ? 0 : (a < b ? -1 : 1);
    return a.localeCompare(b, undefined, {numeric: true});
  }

  function sortBy(th) {
    const numeric = th.dataset.type === "num";
    const dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    table.querySelectorAll("th[aria-sort]").forEach(h => h.removeAttribute("aria-sort"));
    th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
    const rows = Array.from(body.rows);   // Array.sort is stable: ties keep the last order
    rows.sort((a, b) => dir * compare(sortKey(a, th.cellIndex, numeric),
                                      sortKey(b, th.cellIndex, numeric)));
    rows.forEach(row => body.appendChild(row));
  }

  function matches(row) {
    return filters.every(f => {
      const wanted = f.value.trim().toLowerCase();
      if (!wanted) return true;
      if (f.dataset.filter === "text") return row.textContent.toLowerCase().includes(wanted);
      const words = (row.dataset[f.dataset.filter] || "").toLowerCase().split(/\s+/);
      return words.includes(wanted);
    });
  }

  function applyFilters() {
    let shown = 0;
    for (const row of body.rows) {
      row.hidden = !matches(row);
      if (!row.hidden) shown += 1;
    }
    document.getElementById("shown").textContent = shown + " of " + body.rows.length + " shown";
  }

  function openTarget() {
    const target = document.getElementById(decodeURIComponent(location.hash.slice(1)));
    // A run's anchor sits inside its case's <details>; a case's anchor wraps it.
    const details = target && (target.closest("details") || target.querySelector("details"));
    if (details && !details.open) {
      details.open = true;
      target.scrollIntoView();
    }
  }

  table.querySelectorAll("th[data-key]").forEach(th => th.addEventListener("click", () => sortBy(th)));
  // "input" for typing; "change" too, since not every way of picking an option fires "input".
  filters.forEach(f => ["input", "change"].forEach(e => f.addEventListener(e, applyFilters)));
  window.addEventListener("hashchange", openTarget);
  applyFilters();
  openTarget();
})();
