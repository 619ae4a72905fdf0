-- Rules saved with a `reply_window` were stored with it as `reply_window_minutes` (a number),
-- a key the rule reader refuses, so those rules were skipped when loaded ("stored rule no
-- longer valid"). Store the duration under `reply_window`, as the reader takes it ("720m").
UPDATE rules
SET definition = json_remove(
        json_set(definition, '$.reply_window',
                 CAST(json_extract(definition, '$.reply_window_minutes') AS TEXT) || 'm'),
        '$.reply_window_minutes')
WHERE json_type(definition, '$.reply_window_minutes') = 'integer';
