// Jobs: the signed-in account's jobs with progress and logs; exports of the current view.
import { auth, download, getJson, postJson } from "./api.js";
import { $, h, message, progressBar } from "./ui.js";

const ARCHIVES = new Set(["mbtiles", "pmtiles"]);

export function setUpJobs(view, state, search) {
  let timer = null;

  async function showLog(job) {
    const log = $("job-log");
    log.hidden = false;
    try {
      const page = await getJson(`jobs/${job.jobID}/log`);
      log.textContent = (page.lines || []).join("\n") || "(empty log)";
    } catch (error) {
      log.textContent = message(error);
    }
  }

  async function fetchArchive(job) {
    try {
      const results = await getJson(`jobs/${job.jobID}/results`);
      const href = results.archive?.value?.href;
      await download(href, `${job.jobID}.${job.processID}`);
    } catch (error) {
      $("jobs-status").textContent = message(error);
    }
  }

  function render(jobs) {
    $("jobs").replaceChildren(...jobs.map((job) => h("li", { className: "job", "data-job": job.jobID, "data-status": job.status },
      h("strong", {}, job.processID), h("span", { className: "small" }, ` ${job.status} · ${(job.created || "").slice(0, 19)}`),
      progressBar(`${job.processID} job progress`, job.progress || 0),
      h("p", { className: "small" }, job.message || job.error?.description || ""),
      h("div", { className: "row" },
        h("button", { type: "button", onclick: () => showLog(job) }, "Log"),
        job.status === "successful" && ARCHIVES.has(job.processID)
          ? h("button", { type: "button", className: "download", onclick: () => fetchArchive(job) }, "Download") : null))));
  }

  async function refresh() {
    clearTimeout(timer);
    if (!auth.token) {
      $("jobs").replaceChildren();
      $("jobs-status").textContent = "Sign in to see your jobs and export.";
      return;
    }
    try {
      const page = await getJson("jobs", { limit: 20 });
      const jobs = page.jobs || [];
      render(jobs);
      $("jobs-status").textContent = jobs.length ? "" : "No job yet.";
      if (jobs.some((j) => j.status === "accepted" || j.status === "running")) timer = setTimeout(refresh, 1500);
    } catch (error) {
      $("jobs-status").textContent = message(error);
    }
  }

  $("jobs-refresh").addEventListener("click", refresh);
  $("export-zooms").addEventListener("click", () => {
    const zoom = Math.max(0, Math.floor(view.map.getZoom()));
    $("export-minzoom").value = zoom;
    $("export-maxzoom").value = zoom + 2;
  });
  $("export-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const target = $("export-target").value;
    const inputs = { bbox: view.viewBbox(), minzoom: Number($("export-minzoom").value), maxzoom: Number($("export-maxzoom").value) };
    const item = state.search?.current();
    if (target) inputs.collection = target;
    else if (item) inputs.item = { collection: item.collection, id: item.id };
    else { $("jobs-status").textContent = "Open an item or choose a collection to export."; return; }
    try {
      const job = await postJson(`processes/${$("export-format").value}/execution`, { inputs });
      $("jobs-status").textContent = `export job ${job.jobID} started`;
      refresh();
    } catch (error) {
      $("jobs-status").textContent = message(error);
    }
  });
  return { refresh };
}
