"""Infobip response codes, transcribed once from the seed's "КОДЫ ОТВЕТОВ" tables.

Every row of the four tables is here, as data: status groups, statuses, error groups and
GSM error codes. `description` and `action` are the seed's own (Russian) text; names are
Infobip's. Beside them, `description_en` and `action_en` are Infobip's English wording where
its public API documentation gives it: the status and group tables of its SMS API docs
("Message delivered to handset"), and the English examples in the seed itself ("No Error",
"Absent Subscriber", "Pending Accepted"). Where it gives none, the English description is
the code's name (`description_for`). CODE_DESCRIPTIONS=ru keeps the seed's Russian.
The seed's PDF extraction split some long names with a space; those spaces are removed.
Lookups for codes that are not here return None: callers keep and flag them.
"""
from typing import NamedTuple


class Group(NamedTuple):
    id: int
    name: str
    description: str
    description_en: str | None = None


class Status(NamedTuple):
    id: int
    group_id: int
    name: str
    description: str
    action: str | None
    description_en: str | None = None
    action_en: str | None = None


class GsmError(NamedTuple):
    id: int
    group_id: int
    name: str
    description: str
    permanent: bool
    description_en: str | None = None


LANGUAGES = ("en", "ru")


def description_for(row: Group | Status | GsmError, language: str) -> str:
    """"ru": the seed's text; otherwise Infobip's English wording, or the code's name."""
    return row.description if language == "ru" else row.description_en or row.name


def action_for(row: Status, language: str) -> str | None:
    return row.action if language == "ru" else row.action_en


STATUS_GROUPS: dict[int, Group] = {g.id: g for g in (
    Group(0, 'ACCEPTED', 'Сообщение принято.', 'Message is accepted.'),
    Group(1, 'PENDING', 'Сообщение в статусе ожидания.', 'Message is in pending status.'),
    Group(2, 'UNDELIVERABLE', 'Сообщение не может быть доставлено.', 'Message is undeliverable.'),
    Group(3, 'DELIVERED', 'Сообщение доставлено.', 'Message is delivered.'),
    Group(4, 'EXPIRED', 'Период срока жизни сообщения истек.', 'Message is expired.'),
    Group(5, 'REJECTED', 'Сообщение отклонено.', 'Message is rejected.'),
)}

STATUSES: dict[int, Status] = {s.id: s for s in (
    Status(1, 1, 'PENDING_TIME_VIOLATION', 'Нарушение временного окна', None, 'Time window violation'),
    Status(2, 3, 'DELIVERED_TO_OPERATOR', 'Сообщение доставлено оператору', None, 'Message delivered to operator'),
    Status(3, 1, 'PENDING_WAITING_DELIVERY', 'Сообщение отправлено, ожидается отчет о доставке', None, 'Message sent, waiting for delivery report'),
    Status(4, 2, 'UNDELIVERABLE_REJECTED_OPERATOR', 'Сообщение отклонено оператором', None, 'Message rejected by operator'),
    Status(5, 3, 'DELIVERED_TO_HANDSET', 'Сообщение доставлено на устройство', None, 'Message delivered to handset'),
    Status(6, 5, 'REJECTED_NETWORK', 'Запрет сети', 'Свяжитесь с аккаунт-менеджером', 'Network is forbidden', 'Contact account manager'),
    Status(7, 1, 'PENDING_ENROUTE', 'Сообщение отправлено в следующую инстанцию', None, 'Message sent to next instance'),
    Status(8, 5, 'REJECTED_PREFIX_MISSING', 'Отсутствует префикс номера', None, 'Number prefix missing'),
    Status(9, 2, 'UNDELIVERABLE_NOT_DELIVERED', 'Отправленное сообщение не доставлено', None, 'Message sent not delivered'),
    Status(10, 5, 'REJECTED_DND', 'Адрес назначения в списке DND', None, 'Destination on DND list'),
    Status(11, 5, 'REJECTED_SOURCE', 'Недействительный адрес источника', None, 'Invalid Source address'),
    Status(12, 5, 'REJECTED_NOT_ENOUGH_CREDITS', 'Недостаточная сумма на балансе.', None, 'Not enough credits'),
    Status(13, 5, 'REJECTED_SENDER', 'Отклонено имя отправителя', 'Удалите отправителя из черного списка', 'By Sender', 'Remove sender from blacklist'),
    Status(14, 5, 'REJECTED_DESTINATION', 'Отклонено получателем', 'Удалите абонента из черного списка', 'By Destination', 'Remove destination from blacklist'),
    Status(15, 4, 'EXPIRED_EXPIRED', 'Период действия сообщения истек', None, 'Message expired'),
    Status(16, 5, 'REJECTED_NOT_REACHABLE', 'Нет доступа к сети', None, 'Network not reachable'),
    Status(17, 5, 'REJECTED_PREPAID_PACKAGE_EXPIRED', 'Истек период действия предоплаченного пакета', 'Пополните счет для продления периода действия', 'Prepaid package expired', 'Top-Up your account to extend the validity period'),
    Status(18, 5, 'REJECTED_DESTINATION_NOT_REGISTERED', 'Пункт назначения не зарегистрирован', None, 'Destination not registered'),
    Status(19, 5, 'REJECTED_ROUTE_NOT_AVAILABLE', 'Маршрут недоступен', 'Свяжитесь с аккаунт-менеджером', 'Route not available', 'Contact account manager'),
    Status(20, 5, 'REJECTED_FLOODING_FILTER', 'Отказ по причине флуда', 'Остановить спам', 'Rejected flooding', 'STOP SPAMMING'),
    Status(21, 5, 'REJECTED_SYSTEM_ERROR', 'Системная ошибка', 'Попробуйте еще раз', 'System error'),
    Status(22, 4, 'EXPIRED_UNKNOWN', 'Неизвестная причина', None, 'Unknown Reason'),
    Status(23, 5, 'REJECTED_DUPLICATE_MESSAGE_ID', 'Отказ, дубликат ID сообщения', None, 'Rejected duplicate message ID'),
    Status(24, 5, 'REJECTED_INVALID_UDH', 'Отказ, недействительный UDH', None, 'Rejected invalid UDH'),
    Status(25, 5, 'REJECTED_MESSAGE_TOO_LONG', 'Отказ, слишком длинное сообщение', None, 'Rejected message too long'),
    Status(26, 1, 'PENDING_ACCEPTED', 'Ожидание принято', None, 'Pending Accepted'),
    Status(27, 1, 'PENDING_APPROVAL', 'Ожидание одобрено', None),
    Status(28, 5, 'REJECTED_NOT_SENT', 'Отказ, не отправлено', None),
    Status(29, 4, 'EXPIRED_DLR_UNKNOWN', 'Истек период действия, неизвестный DLR', None),
    Status(30, 3, 'DELIVERED', 'MO перенаправлено, действие завершено', None),
    Status(31, 2, 'UNDELIVERABLE_NOT_SENT', 'Сообщение не отправлено', None),
    # Infobip gives no English text for these two: the name stands for the description, the action is the seed's, translated.
    Status(51, 5, 'MISSING_TO', 'Отсутствует получатель', 'Проверьте параметр to.', None, 'Check the to parameter.'),
    Status(52, 5, 'REJECTED_DESTINATION', 'Недействительный адрес назначения.', 'Проверьте параметр to.', None, 'Check the to parameter.'),
)}

ERROR_GROUPS: dict[int, Group] = {g.id: g for g in (
    Group(0, 'OK', 'Ошибок нет.', 'No error.'),
    Group(1, 'HANDSET_ERRORS', 'Ошибка устройства.', 'Handset error occurred.'),
    Group(2, 'USER_ERRORS', 'Ошибка пользователя.', 'User error occurred.'),
    Group(3, 'OPERATOR_ERRORS', 'Ошибка оператора.', 'Operator error occurred.'),
)}

GSM_ERRORS: dict[int, GsmError] = {e.id: e for e in (
    GsmError(0, 0, 'NO_ERROR', 'Нет ошибки', False, 'No Error'),
    GsmError(1, 1, 'EC_UNKNOWN_SUBSCRIBER', 'Неизвестный абонент', True),
    GsmError(5, 1, 'EC_UNIDENTIFIED_SUBSCRIBER', 'Неопределенный абонент', False),
    GsmError(6, 1, 'EC_ABSENT_SUBSCRIBER_SM', 'Отсутствующий абонент', False),
    GsmError(9, 1, 'EC_ILLEGAL_SUBSCRIBER', 'Абонент указан неверно', False),
    GsmError(10, 3, 'EC_BEARER_SERVICE_NOT_PROVISIONED', 'Носитель сервиса не предоставлен', True),
    GsmError(11, 1, 'EC_TELESERVICE_NOT_PROVISIONED', 'Телесервис не представлен', True),
    GsmError(12, 1, 'EC_ILLEGAL_EQUIPMENT', 'Нелегальное оборудование', True),
    GsmError(13, 1, 'EC_CALL_BARRED', 'Запрет звонка', False),
    GsmError(20, 3, 'EC_SS_INCOMPATIBILITY', 'Несоответствие SS', False),
    GsmError(21, 1, 'EC_FACILITY_NOT_SUPPORTED', 'Оборудование не поддерживается', False),
    GsmError(27, 1, 'EC_ABSENT_SUBSCRIBER', 'Отсутствующий абонент', False, 'Absent Subscriber'),
    GsmError(31, 1, 'EC_SUBSCRIBER_BUSY_FOR_MT_SMS', 'Абонент недоступен для приема входящих SMS', False),
    GsmError(32, 1, 'EC_SM_DELIVERY_FAILURE', 'Сбой доставки SM', False),
    GsmError(33, 1, 'EC_MESSAGE_WAITING_LIST_FULL', 'Ожидание сообщения, список переполнен', False),
    GsmError(34, 1, 'EC_SYSTEM_FAILURE', 'Системный сбой', False),
    GsmError(35, 1, 'EC_DATA_MISSING', 'Отсутствие данных', False),
    GsmError(36, 1, 'EC_UNEXPECTED_DATA_VALUE', 'Неожиданное значение данных', False),
    GsmError(51, 3, 'EC_RESOURCE_LIMITATION', 'Лимит ресурса', True),
    GsmError(71, 3, 'EC_UNKNOWN_ALPHABET', 'Неизвестный алфавит', False),
    GsmError(72, 1, 'EC_USSD_BUSY', 'Ussd занят', True),
    GsmError(255, 1, 'EC_UNKNOWN_ERROR', 'Неизвестная ошибка', False),
    GsmError(256, 1, 'EC_SM_DF_MEMORYCAPACITYEXCEEDED', 'Превышен объем памяти SM DF', False),
    GsmError(257, 1, 'EC_SM_DF_EQUIPMENTPROTOCOLERROR', 'Ошибка протокола оборудования SM DF', False),
    GsmError(258, 1, 'EC_SM_DF_EQUIPMENTNOTSM_EQUIPPED', 'Оборудование SM DF не оборудовано SM', False),
    GsmError(259, 1, 'EC_SM_DF_UNKNOWNSERVICECENTRE', 'Неизвестный сервис-центр SM DF', False),
    GsmError(260, 1, 'EC_SM_DF_SC_CONGESTION', 'перегруженность SM DF Sc', False),
    GsmError(261, 1, 'EC_SM_DF_INVALIDSME_ADDRESS', 'SM DF недействительный адрес SME', False),
    GsmError(262, 1, 'EC_SM_DF_SUBSCRIBERNOTSC_SUBSCRIBER', 'SM DF абонент не является абонентом SC', False),
    GsmError(500, 1, 'EC_PROVIDER_GENERAL_ERROR', 'Общая ошибка провайдера', False),
    GsmError(501, 3, 'EC_INVALID_RESPONSE_RECEIVED', 'Получен недействительный ответ', False),
    GsmError(502, 1, 'EC_NO_RESPONSE', 'Нет ответа', False),
    GsmError(503, 1, 'EC_SERVICE_COMPLETION_FAILURE', 'Сбой завершения сервиса', False),
    GsmError(504, 1, 'EC_UNEXPECTED_RESPONSE_FROM_PEER', 'Неожиданный ответ от узла того же уровня', False),
    GsmError(507, 1, 'EC_MISTYPED_PARAMETER', 'Неправильно введенный параметр', False),
    GsmError(508, 1, 'EC_NOT_SUPPORTED_SERVICE', 'Не поддерживаемый сервис', False),
    GsmError(509, 1, 'EC_DUPLICATED_INVOKE_ID', 'Дубликат Id', False),
    GsmError(511, 1, 'EC_INITIATING_RELEASE', 'Инициация релиза', False),
    GsmError(1024, 1, 'EC_OR_APPCONTEXTNOTSUPPORTED', 'Контекст приложения не поддерживается', False),
    GsmError(1025, 1, 'EC_OR_INVALIDDESTINATIONREFERENCE', 'Недействительная ссылка на абонента', False),
    GsmError(1026, 1, 'EC_OR_INVALIDORIGINATINGREFERENCE', 'Недействительная ссылка на источник', False),
    GsmError(1027, 1, 'EC_OR_ENCAPSULATEDAC_NOTSUPPORTED', 'Капсулированный AC не поддерживается', False),
    GsmError(1028, 1, 'EC_OR_TRANSPORTPROTECTIONNOTADEQUATE', 'Не соответствующая безопасность передачи данных', False),
    GsmError(1029, 1, 'EC_OR_NOREASONGIVEN', 'Причина не указана', False),
    GsmError(1030, 1, 'EC_OR_POTENTIALVERSIONINCOMPATIBILITY', 'Несовместимость с потенциальной версией', False),
    GsmError(1031, 1, 'EC_OR_REMOTENODENOTREACHABLE', 'Удаленный узел недоступен', False),
    GsmError(1152, 1, 'EC_NNR_NOTTRANSLATIONFORANADDRESSOFSUCHNATURE', 'Нет перевода для такого типа адреса', False),
    GsmError(1153, 1, 'EC_NNR_NOTTRANSLATIONFORTHISSPECIFICADDRESS', 'Нет перевода для данного адреса', False),
    GsmError(1154, 1, 'EC_NNR_SUBSYSTEMCONGESTION', 'Перегруженность подсистемы', False),
    GsmError(1155, 1, 'EC_NNR_SUBSYSTEMFAILURE', 'Сбой подсистемы', False),
    GsmError(1156, 1, 'EC_NNR_UNEQUIPPEDUSER', 'Пользователь без оборудования', False),
    GsmError(1157, 1, 'EC_NNR_MTPFAILURE', 'Сбой MTP', False),
    GsmError(1158, 1, 'EC_NNR_NETWORKCONGESTION', 'Загруженность сети', False),
    GsmError(1159, 1, 'EC_NNR_UNQUALIFIED', 'Неквалифицировано', False),
    GsmError(1160, 1, 'EC_NNR_ERRORINMESSAGETRANSPORTXUDT', 'Ошибка в передаче сообщения XUDT', False),
    GsmError(1161, 1, 'EC_NNR_ERRORINLOCALPROCESSINGXUDT', 'Ошибка локальной обработки XUDT', False),
    GsmError(1162, 1, 'EC_NNR_DESTINATIONCANNOTPERFORMREASSEMBLYXUDT', 'Абонент не может выполнить повторную сборку XUDT', False),
    GsmError(1163, 1, 'EC_NNR_SCCPFAILURE', 'Сбой SCCP', False),
    GsmError(1164, 1, 'EC_NNR_HOPCOUNTERVIOLATION', 'Нарушение счетчика переходов', False),
    GsmError(1165, 1, 'EC_NNR_SEGMENTATIONNOTSUPPORTED', 'Сегментация не поддерживается', False),
    GsmError(1166, 1, 'EC_NNR_SEGMENTATIONFAILURE', 'Сбой сегментации', False),
    GsmError(1281, 1, 'EC_UA_USERSPECIFICREASON', 'Причина, связанная с пользователем', False),
    GsmError(1282, 1, 'EC_UA_USERRESOURCELIMITATION', 'Лимит ресурса пользователя', False),
    GsmError(1283, 1, 'EC_UA_RESOURCEUNAVAILABLE', 'Ресурс недоступен', False),
    GsmError(1284, 1, 'EC_UA_APPLICATIONPROCEDURECANCELLATION', 'Отмена процедуры приложения', False),
    GsmError(1536, 1, 'EC_PA_PROVIDERMALFUNCTION', 'Сбой провайдера', False),
    GsmError(1537, 1, 'EC_PA_SUPPORTINGDIALOGORTransactionRELEASED', 'Выпущен поддерживающий диалог транзакции', False),
    GsmError(1538, 1, 'EC_PA_RESSOURCELIMITATION', 'Лимит ресурса', False),
    GsmError(1539, 1, 'EC_PA_MAINTENANCEACTIVITY', 'Работы по обслуживанию', False),
    GsmError(1540, 1, 'EC_PA_VERSIONINCOMPATIBILITY', 'Несовместимость версии', False),
    GsmError(1541, 1, 'EC_PA_ABNORMALMAPDIALOG', 'Аномальная карта диалога', False),
    GsmError(1792, 1, 'EC_NC_ABNORMALEVENTDETECTEDBYPEER', 'Аномальное событие, обнаруженное узлом того же уровня', False),
    GsmError(1793, 1, 'EC_NC_RESPONSEREJECTEDBYPEER', 'Отказ в ответе узлом того же уровня', False),
    GsmError(1794, 1, 'EC_NC_ABNORMALEVENTRECEIVEDFROMPEER', 'Аномальное событие, полученное от узла того же уровня', False),
    GsmError(1795, 1, 'EC_NC_MESSAGECANNOTBEDELIVEREDTOPEER', 'Сообщение не может быть доставлено на узел того же уровня', False),
    GsmError(1796, 1, 'EC_NC_PROVIDEROUTOFINVOKE', 'Провайдер вне зоны вызова', False),
    GsmError(2048, 3, 'EC_TIME_OUT', 'Time Out', False),
    GsmError(2049, 2, 'EC_IMSI_BLACKLISTED', 'IMSI в черном списке', False),
    GsmError(2050, 3, 'EC_DEST_ADDRESS_BLACKLISTED', 'DND в черном списке', True),
    GsmError(2051, 3, 'EC_INVALIDMSCADDRESS', 'Текст в черном списке', False),
    GsmError(4096, 2, 'EC_INVALID_PDU_FORMAT', 'Недействительный формат PDU', True),
    GsmError(4097, 3, 'EC_NOTSUBMITTEDTOGMSC', 'Не представлено в GMSC', False),
    GsmError(4100, 2, 'EC_MESSAGE_CANCELED', 'Сообщение отменено', True),
    GsmError(4101, 2, 'EC_VALIDITYEXPIRED', 'Истек период действия', True),
    GsmError(4102, 3, 'EC_NOTSUBMITTEDTOSMPPCHANNEL', 'Не передано в канал Smpp', True),
    GsmError(5000, 0, 'VOICE_ANSWERED', 'На звонок отвечает человек', True),
    GsmError(5001, 0, 'VOICE_ANSWERED_MACHINE', 'На звонок отвечает машина', True),
    GsmError(5002, 2, 'EC_VOICE_USER_BUSY', 'Пользователь был занят во время попытки звонка', True),
    GsmError(5003, 2, 'EC_VOICE_NO_ANSWER', 'Пользователь был оповещен, но не ответил на звонок', True),
    GsmError(5004, 2, 'EC_VOICE_ERROR_DOWNLOADING_FILE', 'Файл для звонка не был загружен', True),
    GsmError(5005, 2, 'EC_VOICE_ERROR_UNSUPPORTED_AUDIO_FORMAT', 'Формат представленного файла для звонка не поддерживается', True),
)}

# Status groups after which Infobip sends no further report for the message (SPEC §2.1):
# UNDELIVERABLE, DELIVERED, EXPIRED, REJECTED. ACCEPTED and PENDING are intermediate.
FINAL_GROUP_IDS = frozenset({2, 3, 4, 5})
