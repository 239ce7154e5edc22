// The page of `headstart serve`: send images to this server, show its answers. No libraries,
// nothing fetched from anywhere but this server, so it works offline.
"use strict";

const $ = (id) => document.getElementById(id);
const TOP_K = 5;

function headers(extra) {
  const token = $("token").value.trim();
  const all = Object.assign({}, extra || {});
  if (token) all.Authorization = "Bearer " + token;
  return all;
}

function modelUrl(path) {
  return "models/" + encodeURIComponent($("model").value) + "/" + path;
}

async function errorText(response) {
  try {
    const body = await response.json();
    return body.error || response.statusText;
  } catch (_) {
    return response.status + " " + response.statusText;
  }
}

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").classList.toggle("error", Boolean(isError));
}

function showAnswer(item, answer) {
  const verdict = item.querySelector(".verdict");
  verdict.textContent = "";
  const label = document.createElement("strong");
  label.textContent = answer.label;
  verdict.append(label, " " + (100 * answer.probability).toFixed(1) + "%");
  if (answer.unknown === true) {
    const flag = document.createElement("span");
    flag.className = "unknown";
    flag.textContent = " \u2014 unlike every class it was trained on (unknown)";
    verdict.append(flag);
  }
  if (typeof answer.typicality === "number") {
    verdict.append(", typicality " + answer.typicality.toFixed(2));
  }
  const bars = item.querySelector(".bars");
  for (const top of answer.top_k) {
    const bar = document.createElement("li");
    bar.className = "bar";
    const name = document.createElement("span");
    name.className = "label";
    name.textContent = top.label;
    name.title = top.label;
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.display = "block";
    fill.style.width = (100 * top.probability).toFixed(1) + "%";
    track.append(fill);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = (100 * top.probability).toFixed(1) + "%";
    bar.append(name, track, value);
    bars.append(bar);
  }
}

async function showMap(item, file, pictureUrl) {
  const response = await fetch(modelUrl("explain?filename=" + encodeURIComponent(file.name)), {
    method: "POST",
    headers: headers({ "Content-Type": file.type || "application/octet-stream" }),
    body: file,
  });
  if (!response.ok) return; // the answer stands without its map
  const mapUrl = URL.createObjectURL(await response.blob());
  const picture = item.querySelector(".picture");
  const toggle = item.querySelector(".show-map");
  const show = () => { picture.src = toggle.checked ? mapUrl : pictureUrl; };
  toggle.addEventListener("change", show);
  show();
  item.dataset.map = "shown";
}

async function send(files) {
  const images = Array.from(files);
  if (!images.length) return;
  setStatus("Predicting " + images.length + " image(s)\u2026");
  const form = new FormData();
  for (const file of images) form.append("files", file, file.name);
  let answers;
  try {
    const response = await fetch(modelUrl("predict?top_k=" + TOP_K), {
      method: "POST", headers: headers(), body: form,
    });
    if (!response.ok) {
      setStatus(await errorText(response), true);
      return;
    }
    answers = await response.json();
  } catch (err) {
    setStatus("The server did not answer: " + err, true);
    return;
  }
  setStatus("");
  const maps = [];
  images.forEach((file, i) => {
    const item = $("result").content.firstElementChild.cloneNode(true);
    const pictureUrl = URL.createObjectURL(file);
    item.querySelector(".picture").src = pictureUrl;
    item.querySelector(".picture").alt = file.name;
    item.querySelector(".name").textContent = file.name;
    showAnswer(item, answers[i]);
    $("results").prepend(item);
    maps.push(() => showMap(item, file, pictureUrl));
  });
  for (const map of maps) await map(); // one at a time: each is a backward pass
}

async function start() {
  const saved = localStorage.getItem("headstart-token");
  if (saved) $("token").value = saved;
  $("token").addEventListener("change", () => localStorage.setItem("headstart-token", $("token").value));
  try {
    const health = await (await fetch("health")).json();
    for (const name of health.models) {
      const option = document.createElement("option");
      option.value = option.textContent = name;
      $("model").append(option);
    }
    $("model-choice").hidden = health.models.length < 2;
    $("token-choice").hidden = !health.token_required;
  } catch (err) {
    setStatus("The server did not answer: " + err, true);
  }
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    send(e.dataTransfer.files);
  });
  $("files").addEventListener("change", (e) => { send(e.target.files); e.target.value = ""; });
}

start();
