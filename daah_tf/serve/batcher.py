"""A micro-batcher: concurrent queries to one SavedModel signature share one call.

Requests wait in a queue; one worker takes everything queued (at most `max_batch`), waits at
most `max_wait_s` for more when the batch is not full, and runs `encode(batch)` on its own
thread, so the event loop keeps accepting requests meanwhile. Under load, requests pile up
while a batch runs and the next batch takes them all; an idle service adds at most
`max_wait_s` to a query. A batch that fails is retried item by item, so that one bad input
(a corrupt image) fails alone and its neighbours still get their codes.
"""

import asyncio
from concurrent.futures import ThreadPoolExecutor


class MicroBatcher:
    """Batches calls of ``encode(list of inputs) -> array (B, ...)`` across coroutines.

    Args:
        encode: maps a list of B inputs to an array with B rows (row i for input i).
        max_batch: most inputs per call.
        max_wait_s: longest wait for more inputs once one is queued.
        on_batch: optional callback(batch size), e.g. a metrics histogram.
    """

    def __init__(self, encode, max_batch=32, max_wait_s=0.001, on_batch=None, name="encode"):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._encode = encode
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._on_batch = on_batch
        self._queue = None
        self._task = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"batcher-{name}")

    async def start(self):
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self):
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    async def submit(self, value):
        """The encoding (one row) of `value`; raises what encoding it alone raised."""
        if self._task is None or self._task.done():
            raise RuntimeError("MicroBatcher is not running (start() it in the app's lifespan)")
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((value, future))
        return await future

    async def _run(self):
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.max_wait_s
            while len(batch) < self.max_batch:
                if not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            batch = [(value, future) for value, future in batch if not future.cancelled()]
            if not batch:
                continue
            if self._on_batch is not None:
                self._on_batch(len(batch))
            results = await loop.run_in_executor(self._executor, self._encode_all,
                                                 [value for value, _ in batch])
            for (_, future), result in zip(batch, results, strict=True):
                if future.cancelled():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _encode_all(self, values):
        """Row i (or the exception of input i alone) for each input."""
        try:
            rows = self._encode(values)
            return [rows[i] for i in range(len(values))]
        except Exception as error:  # isolate the bad input(s): retry one by one
            if len(values) == 1:
                return [error]
            return [self._encode_all([value])[0] for value in values]
