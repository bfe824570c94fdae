// Uploads: files dropped on the page (or chosen) go into an upload set of the chosen collection,
// each over tus with its own progress bar; tus-js-client keeps each upload's URL in
// localStorage, so dropping the same file after a reload resumes it. Then each file's status is
// polled until it is an item (or rejected, with the reason).
import * as tus from "tus-js-client";
import { apiUrl, auth, getJson, postJson } from "./api.js";
import { $, h, message, progressBar } from "./ui.js";

const FINISHED = new Set(["ready", "rejected", "duplicate"]);

function row(file) {
  const bar = progressBar(`upload of ${file.name}`, 0);
  const status = h("span", { className: "small status", role: "status" }, "waiting");
  const actions = h("span", {});
  const el = h("li", { className: "upload", "data-file": file.name }, h("strong", {}, file.name), bar, status, actions);
  $("uploads").prepend(el);
  return { el, bar, status, actions, set: {
    text(text, state) { status.textContent = text; if (state) el.dataset.state = state; },
  } };
}

export function setUpUploads(view, state, reloadCollections, search) {
  const watched = new Map(); // upload set id -> Map(file id -> row)

  async function poll(setId) {
    const rows = watched.get(setId);
    let set;
    try {
      set = await getJson(`upload_sets/${setId}`);
    } catch (error) {
      for (const r of rows.values()) r.set.text(message(error), "error");
      return;
    }
    let pending = 0;
    let madeItems = false;
    for (const file of set.files || []) {
      const r = rows.get(file.id);
      if (!r) continue;
      const job = file.job || {};
      if (file.status === "ready") {
        r.bar.value = 100;
        r.set.text(`ready: item ${file.item_id}`, "ready");
        if (!r.opened) {
          r.opened = true;
          madeItems = true;
          r.actions.replaceChildren(h("button", { type: "button", onclick: async () => {
            search.openItem(await getJson(`collections/${encodeURIComponent(set.collection)}/items/${encodeURIComponent(file.item_id)}`));
          } }, "Open item"));
        }
      } else if (FINISHED.has(file.status)) {
        r.set.text(`${file.status}: ${file.error?.description || file.error?.code || ""}`, file.status);
      } else {
        pending += 1;
        r.bar.value = job.progress || 0;
        r.set.text(`${file.status}${job.message ? `: ${job.message}` : ""}`, "processing");
      }
    }
    if (madeItems) reloadCollections();
    if (pending || rows.size > (set.files || []).filter((f) => rows.has(f.id)).length) {
      setTimeout(() => poll(setId), 1000);
    }
  }

  function watch(setId, fileId, r) {
    if (!watched.has(setId)) watched.set(setId, new Map());
    const first = watched.get(setId).size === 0;
    watched.get(setId).set(fileId, r);
    if (first) poll(setId);
  }

  function send(upload, setId, r) {
    upload.options.metadata.upload_set = setId;
    upload.options.onProgress = (sent, total) => {
      r.bar.value = total ? Math.round((100 * sent) / total) : 100;
      r.set.text(`uploading ${Math.round((100 * sent) / (total || 1))}%`, "uploading");
    };
    upload.options.onAfterResponse = (req, res) => {
      const fileId = res.getHeader("Upload-File-Id");
      if (fileId) upload.fileId = fileId;
    };
    upload.options.onError = (error) => r.set.text(`upload failed: ${message(error)}`, "error");
    upload.options.onSuccess = () => {
      r.set.text("uploaded, waiting for its job", "received");
      r.bar.value = 0;
      if (upload.fileId) watch(setId, upload.fileId, r);
    };
    upload.start();
  }

  async function uploadFiles(files) {
    const collection = $("upload-collection").value;
    if (!auth.token) { $("uploads").prepend(h("li", { className: "error" }, "Sign in to upload.")); return; }
    if (!collection) { $("uploads").prepend(h("li", { className: "error" }, "Choose a collection first.")); return; }
    const fresh = [];
    for (const file of files) {
      const r = row(file);
      const upload = new tus.Upload(file, {
        endpoint: apiUrl("uploads/"),
        headers: auth.headers(),
        metadata: { filename: file.name, filetype: file.type || "image/tiff" },
        chunkSize: 8 * 1024 * 1024,
        retryDelays: [0, 1000, 3000],
        storeFingerprintForResuming: true,
        removeFingerprintOnSuccess: true,
      });
      const previous = (await upload.findPreviousUploads()).find((p) => p.metadata?.upload_set);
      if (previous) {
        upload.resumeFromPreviousUpload(previous);
        r.set.text("resuming", "uploading");
        send(upload, previous.metadata.upload_set, r);
      } else {
        fresh.push([upload, r]);
      }
    }
    if (!fresh.length) return;
    try {
      const set = await postJson("upload_sets", { collection, title: "viewer upload", expected_files: fresh.length });
      for (const [upload, r] of fresh) send(upload, set.id, r);
    } catch (error) {
      for (const [, r] of fresh) r.set.text(message(error), "error");
    }
  }

  $("upload-input").addEventListener("change", (e) => {
    const files = [...e.target.files];
    e.target.value = "";
    if (files.length) uploadFiles(files);
  });
  const drop = $("drop");
  let depth = 0;
  window.addEventListener("dragenter", (e) => { if (e.dataTransfer?.types?.includes("Files")) { depth += 1; drop.hidden = false; } });
  window.addEventListener("dragleave", () => { depth = Math.max(0, depth - 1); if (!depth) drop.hidden = true; });
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => {
    e.preventDefault();
    depth = 0;
    drop.hidden = true;
    const files = [...(e.dataTransfer?.files || [])];
    if (files.length) uploadFiles(files);
  });
}
