"""Dynamic batching, as TensorFlow Serving's batcher does it: requests waiting for the model are
gathered into one call of up to `max_batch` examples; a batch is run when it is full or when
its first request has waited `timeout` seconds, whichever comes first. Requests that queued
while the model was busy go into the next call at once, so the batches grow with the load. And a
batch does not wait for requests that are not coming: when no other request is being read or
decoded (`coming`, counted by the app), it runs at once, so a lone client pays no timeout.

One background task per worker gathers the batches and hands each to a single model thread:
one model call at a time (TensorFlow uses every core inside it). When a batch fails (an input
the decoders passed but the model cannot compute), each of its requests is run again alone, so
that only the bad one fails.
"""

import asyncio
import collections
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from dlcli.models.predict import first_line
from dlcli.serve.model import RequestError


@dataclass
class Item:
    batch: np.ndarray
    future: asyncio.Future
    arrived: float


class Batcher:
    def __init__(self, run, max_batch, timeout, metrics=None):
        self.run, self.max_batch, self.timeout, self.metrics = run, max_batch, timeout, metrics
        self.items = collections.deque()
        self.arrived = asyncio.Event()
        self.model_thread = ThreadPoolExecutor(1, thread_name_prefix="dlcli-model")
        self.task = None
        self.coming = 0  # requests admitted but not yet submitted (body being read, or decoding)

    def start(self):
        self.task = asyncio.get_running_loop().create_task(self.gather(), name="dlcli-batcher")

    async def close(self):
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        for item in self.items:  # none after a drain; a forced stop leaves its requests unanswered
            item.future.cancel()
        self.model_thread.shutdown(wait=True)

    @property
    def queued(self):
        return sum(len(item.batch) for item in self.items)

    def expect(self):
        """A request is on its way (its body is read and decoded before `predict`)."""
        self.coming += 1

    def give_up(self):
        """An expected request will not come (refused, or its client went away)."""
        self.coming -= 1
        self.arrived.set()

    async def predict(self, batch):
        """The model's outputs for `batch` (its examples in order), from a shared model call.
        Called once per `expect`."""
        self.coming -= 1
        loop = asyncio.get_running_loop()
        item = Item(batch, loop.create_future(), loop.time())
        self.items.append(item)
        self.arrived.set()
        return await item.future

    async def gather(self):
        loop = asyncio.get_running_loop()
        while True:
            batch, size = [], 0
            while True:
                while self.items and (not batch or size + len(self.items[0].batch) <= self.max_batch):
                    item = self.items.popleft()
                    if not item.future.done():  # a client that went away is not computed for
                        batch.append(item)
                        size += len(item.batch)
                if size >= self.max_batch or (batch and self.items):  # full, or the next one does not fit
                    break
                self.arrived.clear()
                if not batch:
                    await self.arrived.wait()
                    continue
                remaining = batch[0].arrived + self.timeout - loop.time()
                if remaining <= 0 or self.coming <= 0:  # the time is up, or nothing else is on its way
                    break
                try:
                    await asyncio.wait_for(self.arrived.wait(), remaining)  # asyncio.timeout needs Python 3.11; pyproject allows 3.10
                except asyncio.TimeoutError:
                    break
            await self.call(batch)

    async def call(self, batch):
        loop = asyncio.get_running_loop()
        inputs = np.concatenate([item.batch for item in batch])
        started = time.perf_counter()
        try:
            outputs = await loop.run_in_executor(self.model_thread, self.run, inputs)
        except Exception as e:
            if len(batch) > 1:  # find the request that broke the batch: each alone
                for item in batch:
                    await self.call([item])
                return
            if not batch[0].future.done():
                batch[0].future.set_exception(RequestError(400, f"the model cannot compute this input: {type(e).__name__}: {first_line(e)}"))
            return
        if self.metrics is not None:
            self.metrics.batch(len(inputs), time.perf_counter() - started)
        start = 0
        for item in batch:
            if not item.future.done():
                item.future.set_result(outputs[start : start + len(item.batch)])
            start += len(item.batch)
