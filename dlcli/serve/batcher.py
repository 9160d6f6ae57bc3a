"""Dynamic batching, as TensorFlow Serving's batcher does it: requests waiting for the model are
gathered into one call of up to `max_batch` examples; a batch is run when it is full or when
its first request has waited `timeout` seconds, whichever comes first. Requests that queued
while the model was busy go into the next call at once, so the batches grow with the load. And a
batch does not wait for requests that are not coming: when no other request is being read or
decoded (`coming`, counted by the app), it runs at once, so a lone client pays no timeout.

One background task per worker gathers the batches and hands each to a single model thread:
one model call at a time (TensorFlow uses every core inside it). That thread first makes the
batch's examples into the model's input (`prepare`: image files are decoded together, in one
call of the decoder, a seventh of the cost of decoding them one by one). In the same thread:
a hop between threads waits for the GIL behind the threads parsing requests, so a batch makes
one. (With --max-batch 1 there is no batch to decode with: images are decoded as they are
read.) When a batch fails (an image whose header passed but which does not decode, or an input the model
cannot compute), each of its requests is run again alone, so that only the bad one fails.
"""

import asyncio
import collections
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from dlcli.core.errors import DlcliError
from dlcli.models.predict import first_line
from dlcli.serve.model import RequestError


@dataclass
class Item:
    batch: list  # the request's examples
    future: asyncio.Future
    arrived: float


class Batcher:
    def __init__(self, run, prepare, max_batch, timeout, metrics=None):
        """`run(inputs)`: the model's outputs; `prepare(list of each request's examples)`: the inputs."""
        self.run, self.max_batch, self.timeout, self.metrics = run, max_batch, timeout, metrics
        self.prepare = prepare
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
        """(inputs, outputs): the model's input made of `batch` (a request's examples) and the
        model's outputs for it, from a shared model call. Called once per `expect`."""
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

    def compute(self, requests):
        """(inputs, outputs, seconds of the model call) for a batch: each request's examples."""
        inputs = self.prepare(requests)
        started = time.perf_counter()
        return inputs, self.run(inputs), time.perf_counter() - started

    async def call(self, batch):
        loop = asyncio.get_running_loop()
        try:
            inputs, outputs, seconds = await loop.run_in_executor(self.model_thread, self.compute, [item.batch for item in batch])
        except Exception as e:
            if len(batch) > 1:  # find the request that broke the batch: each alone
                for item in batch:
                    await self.call([item])
                return
            if not batch[0].future.done():
                message = str(e) if isinstance(e, DlcliError) else f"the model cannot compute this input: {type(e).__name__}: {first_line(e)}"
                batch[0].future.set_exception(RequestError(400, message))
            return
        if self.metrics is not None:
            self.metrics.batch(len(inputs), seconds)
        start = 0
        for item in batch:
            end = start + len(item.batch)
            if not item.future.done():
                item.future.set_result((inputs[start:end], outputs[start:end]))
            start = end
