// "Select all" on the admin's key tables: a header checkbox, shown only where a script runs,
// that checks or clears every key's checkbox in its form, and shows "some" when only some are.
for (const all of document.querySelectorAll("input[data-select-all]")) {
  const form = document.getElementById(all.dataset.selectAll);
  if (!form) continue;
  const boxes = () => Array.from(form.querySelectorAll("input[type=checkbox][name=key]"));
  if (boxes().length === 0) continue;
  const sync = () => {
    const checked = boxes().filter((b) => b.checked).length;
    all.checked = checked > 0 && checked === boxes().length;
    all.indeterminate = checked > 0 && checked < boxes().length;
  };
  all.hidden = false;
  all.addEventListener("change", () => {
    for (const box of boxes()) box.checked = all.checked;
    sync();
  });
  form.addEventListener("change", (event) => {
    if (event.target !== all) sync();
  });
  sync();
}
