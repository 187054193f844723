// Tells the site this browser's time zone (in the `tz` cookie), so pages show times as the
// person reads them; without it they are shown in the site's zone.
try {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  const cookie = "tz=" + encodeURIComponent(zone);
  if (zone && !document.cookie.split("; ").includes(cookie)) {
    document.cookie = cookie + "; path=/; max-age=31536000; samesite=lax";
  }
} catch (e) {}
