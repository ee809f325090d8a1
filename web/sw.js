// Parlor's service worker: shows the Web Push notifications the alert delivery sends
// (webpush.py: {title, body, space_id, url}) and, on a click, opens the Space's page,
// in a Parlor tab already open (which routes to it without a reload) or a new one.

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("push", (event) => {
  let message = {};
  try {
    message = event.data ? event.data.json() : {};
  } catch (_) {
    message = { body: event.data.text() };
  }
  event.waitUntil(self.registration.showNotification(message.title || "Parlor", {
    body: message.body || "",
    // One notification per Space: a newer one about it replaces the older.
    tag: message.space_id || "parlor",
    data: { url: typeof message.url === "string" && message.url.startsWith("/") ? message.url : "/" },
  }));
});

async function open(path) {
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  const tab = windows.find((client) => new URL(client.url).origin === self.location.origin);
  if (tab) {
    tab.postMessage({ type: "open", url: path });
    // Focusing needs the click's activation; without it the tab still routes.
    return tab.focus().catch(() => tab);
  }
  return self.clients.openWindow(new URL(path, self.location.origin).href);
}

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const opening = open(event.notification.data?.url || "/");
  event.waitUntil(opening);
});
