// The "Copy" button beside a key shown once: shown only where a script runs, copies the text.
for (const button of document.querySelectorAll("button[data-copy]")) {
  const field = document.getElementById(button.dataset.copy);
  if (!field || !navigator.clipboard) continue;
  button.hidden = false;
  button.addEventListener("click", async () => {
    await navigator.clipboard.writeText(field.value);
    const status = document.getElementById("copied");
    if (status) status.textContent = "Copied.";
  });
}
