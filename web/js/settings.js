// Settings: push notifications on this browser, the accounts whose Spaces you muted
// (Unmute) and the accounts you blocked (Unblock).

import * as push from "./push.js";
import {
  $, attempt, avatar, el, handleOf, personLink, render, state,
} from "./ui.js";

async function restrictions(view, kind, verb) {
  const path = kind === "muted" ? "/me/muted" : "/me/blocks";
  const page = await state.api.get(path);
  $(`[data-${kind}]`, view).replaceChildren(...page.items.map((person) => {
    const button = el("button", { type: "button", className: "secondary" }, verb,
      el("span", { className: "visually-hidden", textContent: ` ${handleOf(person)}` }));
    button.addEventListener("click", () => attempt(async () => {
      await state.api.delete(`${path}/${person.user_id}`);
      await restrictions(view, kind, verb);
    }));
    return el("li", {}, avatar(person, "s"), personLink(person), button);
  }));
  $(`[data-${kind}-empty]`, view).hidden = page.items.length > 0;
}

export async function showSettings() {
  const view = render("settings-template");
  const toggle = $("#push-toggle", view);
  const status = $("[data-push-status]", view);
  toggle.disabled = true;
  toggle.addEventListener("change", () => {
    const on = toggle.checked;
    toggle.disabled = true;
    status.textContent = on ? "Turning notifications on…" : "Turning notifications off…";
    attempt(async () => {
      try {
        if (on) await push.turnOn(state.api); else await push.turnOff(state.api);
        status.textContent = on ? "Push notifications are on for this browser." : "Push notifications are off for this browser.";
      } catch (error) {
        toggle.checked = !on;
        status.textContent = "";
        throw error;
      } finally {
        toggle.disabled = false;
      }
    });
  });
  await attempt(() => Promise.all([
    push.isOn(state.api).then((on) => { toggle.checked = on; }).catch(() => {}),
    restrictions(view, "muted", "Unmute"),
    restrictions(view, "blocked", "Unblock"),
  ]));
  toggle.disabled = false;
}
