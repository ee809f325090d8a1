// Web Push on this browser: the service worker (/sw.js) shows the notifications and
// opens the Space a click is about. Turning notifications on asks the browser for
// permission (only then), subscribes with the deployment's VAPID public key, and
// registers the subscription as a device of platform `web`; turning them off undoes it.

const DEVICE = "parlor.push-device";

export function supported() {
  return "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
}

// Registered for everyone at start: no prompt, and notification clicks find it.
export function registerWorker() {
  if (!("serviceWorker" in navigator)) return Promise.resolve(null);
  return navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(() => null);
}

async function registration() {
  const found = await registerWorker();
  if (!found) throw new Error("This browser cannot run Parlor's notifications here.");
  await navigator.serviceWorker.ready;
  return found;
}

export async function isOn(api) {
  if (!supported() || Notification.permission !== "granted") return false;
  const deviceId = localStorage.getItem(DEVICE);
  const subscription = await (await registration()).pushManager.getSubscription();
  if (!deviceId || !subscription) return false;
  const devices = await api.get("/me/devices");
  return devices.items.some((d) => d.device_id === deviceId);
}

function keyOf(subscription) {
  const key = subscription.options?.applicationServerKey;
  if (!key) return null;
  return btoa(String.fromCharCode(...new Uint8Array(key)))
    .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export async function turnOn(api) {
  if (!supported()) throw new Error("This browser cannot show push notifications.");
  const permission = await Notification.requestPermission();
  if (permission !== "granted") {
    throw new Error("Notifications are blocked for Parlor: allow them in the browser's site settings.");
  }
  const { public_key: publicKey } = await api.get("/web-push/key");
  const worker = await registration();
  let subscription = await worker.pushManager.getSubscription();
  if (subscription && keyOf(subscription) !== publicKey) {
    // Made with a key the deployment no longer has (rotated): subscribe again.
    await subscription.unsubscribe();
    subscription = null;
  }
  try {
    subscription ||= await worker.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: publicKey });
  } catch (error) {
    throw new Error(`This browser could not subscribe to push notifications (${error.message}).`);
  }
  const device = await api.post("/me/devices", { platform: "web", token: JSON.stringify(subscription) });
  localStorage.setItem(DEVICE, device.device_id);
  await api.put("/me/alert-settings", { push_enabled: true });
}

export async function turnOff(api) {
  const deviceId = localStorage.getItem(DEVICE);
  localStorage.removeItem(DEVICE);
  if (supported()) {
    const subscription = await (await registration()).pushManager.getSubscription();
    await subscription?.unsubscribe();
  }
  if (deviceId) await api.delete(`/me/devices/${deviceId}`).catch(() => {});
}
