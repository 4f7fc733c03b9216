// Status: what GET /api/v1/info says, and the banners for a mock camera or mock pins.

import { request } from "./api.js";
import { bytes, duration, facts } from "./ui.js";

export async function poll() {
  const info = await request("GET", "/api/v1/info");
  const camera = info.camera;
  const storage = info.storage;
  document.getElementById("mock-camera").hidden = info.backend !== "mock";
  document.getElementById("mock-pins").hidden = !info.gpio.mock;
  facts(document.getElementById("status-list"), [
    // The mock's model already names it ("mock (Pillow test pattern)"): no "mock, mock".
    ["Camera", `${camera.model?.startsWith(info.backend) ? camera.model
      : [info.backend, camera.model].filter(Boolean).join(", ")}${camera.open ? "" : " (not working)"}`],
    ["Sensor", camera.sensor_size && camera.sensor_size.join(" × ")],
    ["Last camera error", camera.last_error],
    ["Disk free", `${bytes(storage.free_bytes)} of ${bytes(storage.total_bytes)}`],
    ["Photos", `${info.counts.photos} (${bytes(info.counts.photo_bytes)})`],
    ["GPIO", `${info.gpio.devices} devices, pins: ${info.gpio.pin_factory || "none"}${info.gpio.mock ? " (simulated)" : ""}`],
    ["Live viewers", `${info.stream.clients} of ${info.stream.max_clients}`],
    ["Up for", duration(info.uptime_s)],
    ["Version", info.version],
  ]);
}

export function reset() {
  document.getElementById("status-list").replaceChildren();
  document.getElementById("mock-camera").hidden = true;
  document.getElementById("mock-pins").hidden = true;
}
