// The whole of mpp in one include: Pool and AsyncResult, Process, Queue, Pipe, Value/Array,
// the locks, the serializer, the exception types and the progress bar.
// Adapters for other serialization libraries are not included: include <mpp/serializers/cereal.hpp>.
#pragma once

#include <mpp/async_result.hpp>
#include <mpp/errors.hpp>
#include <mpp/pipe.hpp>
#include <mpp/pool.hpp>
#include <mpp/process.hpp>
#include <mpp/progress.hpp>
#include <mpp/queue.hpp>
#include <mpp/serializer.hpp>
#include <mpp/shared.hpp>
#include <mpp/sync.hpp>
